from dagctl.cli import run

run()
