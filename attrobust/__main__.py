from attrobust.cli import main

main()
