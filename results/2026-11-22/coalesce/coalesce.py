# A subscriber that stops reading while 200 events are published, then drains: counts what
# the server wrote for it (strace output parsed separately).
import socket, sys, time, json
host, port = "127.0.0.1", int(sys.argv[1])
sub = socket.socket()
sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sub.connect((host, port))
sub.sendall(b"GET /sse/notifications HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
head = b""
while b"retry:" not in head:
    head += sub.recv(4096)
print("subscriber port", sub.getsockname()[1], flush=True)
time.sleep(0.5)
pub = socket.create_connection((host, port))
body = json.dumps({"text": "x" * int(sys.argv[3])}).encode()
req = b"POST /sse/notifications HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
n = int(sys.argv[2])
for i in range(n):
    pub.sendall(req)
    resp = b""
    while b"\r\n\r\n" not in resp:
        resp += pub.recv(4096)
print("published", n, flush=True)
time.sleep(0.5)
sub.settimeout(2)
got = b""
try:
    while got.count(b"event: notification") < n:
        chunk = sub.recv(65536)
        if not chunk:
            break
        got += chunk
except socket.timeout:
    pass
print("received events", got.count(b"event: notification"), flush=True)
