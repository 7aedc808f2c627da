pytest_plugins = [
    "tests.fixtures.headers",
    "tests.fixtures.podman",
    "tests.fixtures.postgres",
    "tests.fixtures.sandbox",
    "tests.fixtures.sshd",
    "tests.fixtures.tls",
]
