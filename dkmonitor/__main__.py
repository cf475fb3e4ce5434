from dkmonitor.cli import main

main()
