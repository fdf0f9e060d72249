from dagctl.cli import main

main()
