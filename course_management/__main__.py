from course_management.cli import main

main()
