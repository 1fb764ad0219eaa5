from jasper.cli import main

main()
