"""$connect in Python with boto3, as a user would write it: verify an HS256 JWT from ?token=,
PutItem the connection, reply 200. Served by a minimal Lambda Runtime API loop."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import time

import boto3

client = boto3.client("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"))
SECRET = os.environ["JWT_SECRET"].encode()
TABLE = os.environ["TABLE_NAME"]
API = os.environ["AWS_LAMBDA_RUNTIME_API"]


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify(token):
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    mac = hmac.new(SECRET, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, b64d(parts[2])):
        return None
    claims = json.loads(b64d(parts[1]))
    if claims.get("exp", 0) < time.time():
        return None
    return claims.get("sub")


def handler(event):
    user = verify((event.get("queryStringParameters") or {}).get("token"))
    if not user:
        return {"statusCode": 401}
    cid = event["requestContext"]["connectionId"]
    now = time.time()
    client.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"CONN#{cid}"}, "sk": {"S": "CONN"}, "user_id": {"S": user},
            "connected_at": {"N": str(int(now * 1000))},
            "expires_at": {"N": str(int(now) + 7800)},
        },
    )
    return {"statusCode": 200}


conn = http.client.HTTPConnection(API)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    res = conn.getresponse()
    event = json.loads(res.read())
    rid = res.getheader("Lambda-Runtime-Aws-Request-Id")
    try:
        out, kind = json.dumps(handler(event)), "response"
    except Exception as e:  # noqa: BLE001 - reported to the Runtime API like Lambda's runtime does
        out, kind = json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}), "error"
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/{kind}", out, {"Content-Type": "application/json"})
    conn.getresponse().read()
