"""``python -m modelport`` runs the CLI."""

from modelport.client.cli.main import main

main()
