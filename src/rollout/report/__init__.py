"""Reports: the KPI page with its weekly trend charts, and one deployment's report.

    kpi_page.build(engine, runbook, env, since, until) -> KpiPage   figures + weekly trend
    kpi_page.render(page) -> HTML;  kpi_page.write_png(page, path)
    deployment.gather(store, id) -> DeploymentFacts                 one run's records
    deployment_report.document(facts) -> Document                   what its report says
    html.render(document) -> HTML;  markdown.render(document) -> Markdown
    output.write(path, content)                                     whole file or BadInput

Pages are self-contained (inline CSS and SVG, no scripts, nothing fetched), so they open
offline and can be attached to a ticket. Everything is read from the records; nothing here
writes to the store.
"""
