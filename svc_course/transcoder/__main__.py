from svc_course.transcoder.main import main

if __name__ == "__main__":
    main()
