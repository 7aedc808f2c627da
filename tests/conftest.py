import signal

# A background job of a shell without job control (`make test &` in a script) starts with
# SIGINT ignored, and ignored signals stay ignored in every child: the deploys the tests
# interrupt with Ctrl-C would not hear it. A handled signal is reset to the default on exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = [
    "tests.fixtures.browser",
    "tests.fixtures.git",
    "tests.fixtures.tls",  # before headers, which builds its certificates with it
    "tests.fixtures.headers",
    "tests.fixtures.podman",
    "tests.fixtures.postgres",
    "tests.fixtures.prometheus",
    "tests.fixtures.receiver",
    "tests.fixtures.sandbox",
    "tests.fixtures.sshd",
]
