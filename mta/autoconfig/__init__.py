"""mtad's autoconfig process: HTTPS for mail clients' set-up and the MTA-STS policy.

documents.py builds the documents (pure), request.py parses HTTP requests (bytes in,
no I/O), routes.py maps a request to a response, server.py serves them.
"""
