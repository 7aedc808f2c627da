pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.sandbox", "tests.fixtures.sshd"]
