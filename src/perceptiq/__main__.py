from perceptiq.cli.main import main

main()
