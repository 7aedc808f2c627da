pytest_plugins = [
    "tests.fixtures.browser",
    "tests.fixtures.git",
    "tests.fixtures.tls",  # before headers, which builds its certificates with it
    "tests.fixtures.headers",
    "tests.fixtures.podman",
    "tests.fixtures.postgres",
    "tests.fixtures.prometheus",
    "tests.fixtures.sandbox",
    "tests.fixtures.sshd",
]
