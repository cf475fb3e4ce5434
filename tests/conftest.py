pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.cli",
    "tests.fixtures.tree",
    "tests.fixtures.smtp",
    "tests.fixtures.cleaning",
]
