"""The application's database: backups with manifests, verification, migrations, restore.

Not rollout's own records (that is ``rollout.store``): this package works on the database the
deployed app uses, reached by the environment's ``database.url``.
"""
