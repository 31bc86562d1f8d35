from ML.cli import main

main()
