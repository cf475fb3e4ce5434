"""Packaging for dkmonitor.

The alembic environment lives at the repository root in ``migrations/`` (where
administrators and developers expect it) but is shipped *inside* the package
as ``dkmonitor.migrations`` so that a plain, non-editable ``pip install .`` can
still migrate a database. ``package_dir`` does that mapping.

The scanner's per-directory loop is also a small C extension, built when a
compiler and Python's headers are there (Debian: gcc, python3-dev) and skipped
otherwise (``optional=True``): dkmonitor then uses the pure-Python loop, which
gives the same numbers, only slower (``dkmonitor --version`` says which).
"""
from setuptools import Extension, find_packages, setup

REPORT = ["matplotlib>=3.7", "jinja2>=3.1"]

setup(
    name="dkmonitor",
    version="0.1.0",
    description="Audit shared multi-user storage: per-user usage history, mail, safe cleaning",
    python_requires=">=3.11",
    # every package under dkmonitor/ (a hand-kept list once shipped without a new
    # one: tests/test_packaging.py builds the wheel and checks), plus the migrations
    packages=[
        *find_packages(include=["dkmonitor", "dkmonitor.*"]),
        "dkmonitor.migrations",
        "dkmonitor.migrations.versions",
    ],
    package_dir={
        "dkmonitor.migrations": "migrations",
        "dkmonitor.migrations.versions": "migrations/versions",
    },
    package_data={
        "dkmonitor.templates": ["*.txt"],
        "dkmonitor.report": ["templates/*.html.j2"],
        "dkmonitor.migrations": ["script.py.mako"],
    },
    install_requires=[
        "sqlalchemy>=2.0,<3",
        "alembic>=1.12",
        "click>=8.2",  # click.exceptions.NoArgsIsHelpError (cli/__init__.py)
        "psycopg2-binary>=2.9",
        "termcolor>=2.0",
    ],
    extras_require={
        # `dkmonitor report`: charts (matplotlib, inline SVG) and pages (Jinja2)
        "report": REPORT,
        "test": [
            "pytest>=7",
            "aiosmtpd>=1.4",
            "ruff",
            "mypy",
            "setuptools>=64",
            "wheel",
            "zstandard",
            "prometheus_client>=0.17",
            "websocket-client>=1.6",  # drives headless chromium in tests/test_report_browser.py
            *REPORT,
        ],
        # .zst lists for run full --from-list (else the zstd command is used when present)
        "zstd": ["zstandard"],
        # scanning one target with every rank of an MPI job (mpirun, srun); needs an MPI
        # library (Debian: openmpi-bin, libopenmpi-dev) to build against
        "mpi": ["mpi4py>=3.1"],
        # node_exporter textfile metrics ([metrics] textfile)
        "metrics": ["prometheus_client>=0.17"],
    },
    ext_modules=[
        Extension(
            "dkmonitor.scan._dirscan",
            ["dkmonitor/scan/_dirscan.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(  # root's record of announced files (announce/recordfile.py says why)
            "dkmonitor.announce._recordio",
            [f"dkmonitor/announce/{name}.c"
             for name in ("_recordio", "recordio_io", "recordio_sets", "recordio_sort",
                          "recordio_merge")],
            depends=["dkmonitor/announce/recordio.h"],
            # threads: the spools are sorted and the merge is shared by owner at once;
            # hidden: the files' shared functions are not exported from the module
            extra_compile_args=["-O2", "-pthread", "-fvisibility=hidden"],
            extra_link_args=["-pthread"],
            optional=True,
        ),
        Extension(  # the --from-list reader's plain-file loop (scan/listcompiled.py)
            "dkmonitor.scan._listparse",
            ["dkmonitor/scan/_listparse.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ],
    entry_points={"console_scripts": ["dkmonitor = dkmonitor.cli:main"]},
)
