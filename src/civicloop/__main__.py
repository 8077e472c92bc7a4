from civicloop.cli.main import app

app()
