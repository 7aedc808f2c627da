from rollout.cli.main import run

run()
