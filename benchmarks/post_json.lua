-- wrk script: POST the JSON body given in the WRK_BODY environment variable to the URL.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
