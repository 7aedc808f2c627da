pytest_plugins = [
    "tests.fixtures.podman",
    "tests.fixtures.postgres",
    "tests.fixtures.sandbox",
    "tests.fixtures.sshd",
]
