#!/usr/bin/env python3
"""HTTPS webhook receiver for veil's tests.

Verifies every delivery with the plain recipe consumers use:
    hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).hexdigest(), signature)
and appends one JSON line per request to --log. Answers 503 to the first --fail-first
requests, 401 to bad signatures, 204 otherwise.
"""
import argparse, hashlib, hmac, http.server, json, ssl, threading

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--secret-file", required=True)
p.add_argument("--log", required=True)
p.add_argument("--fail-first", type=int, default=0)
a = p.parse_args()
secret = open(a.secret_file, "rb").read().rstrip(b"\r\n")
lock = threading.Lock()
count = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        signature = self.headers.get("x-veil-signature", "")
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, signature)
        with lock:
            count += 1
            failing = count <= a.fail_first
            status = 503 if failing else (204 if valid else 401)
            with open(a.log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"valid": valid, "status": status, "signature": signature,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body.decode("utf-8", "replace")}) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(a.cert, a.key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
