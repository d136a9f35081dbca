"""Starts moto's server on loopback with IAM enforcement and a write-only user.

Usage: moto_s3.py DIR PORT [BUCKET]. Prints KEY=VALUE lines (as tests/support/garage.sh does)
and leaves the server running with its pid in DIR/moto.pid.

The writer's policy allows only s3:PutObject and s3:AbortMultipartUpload on the bucket's
objects; a reader user exists for the test to fetch what landed. Authentication starts
after the setup calls below (moto's /moto-api/reset-auth counts them).
"""
import json, os, subprocess, sys, time, urllib.request

import boto3

d, port = sys.argv[1], int(sys.argv[2])
bucket = sys.argv[3] if len(sys.argv) > 3 else "rec"
os.makedirs(d, exist_ok=True)
url = f"http://127.0.0.1:{port}"
log = open(os.path.join(d, "moto.log"), "wb")
proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, start_new_session=True)
open(os.path.join(d, "moto.pid"), "w").write(str(proc.pid))
for _ in range(100):
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("moto_server did not start")

SETUP_CALLS = 7
urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset-auth", data=str(SETUP_CALLS).encode(), method="POST", headers={"Content-Type": "text/plain"}))
admin = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
s3 = boto3.client("s3", **admin)
iam = boto3.client("iam", **admin)
s3.create_bucket(Bucket=bucket)  # 1


def user(name, actions, resources):
    iam.create_user(UserName=name)  # +1
    iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}))  # +1
    k = iam.create_access_key(UserName=name)["AccessKey"]  # +1
    return k["AccessKeyId"], k["SecretAccessKey"]


w = user("veil-writer", ["s3:PutObject", "s3:AbortMultipartUpload"], [f"arn:aws:s3:::{bucket}/*"])
r = user("test-reader", ["s3:GetObject", "s3:ListBucket"], [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"])
print(f"MOTO_ENDPOINT={url}\nMOTO_BUCKET={bucket}\nWRITER_KEY_ID={w[0]}\nWRITER_SECRET={w[1]}\n"
      f"READER_KEY_ID={r[0]}\nREADER_SECRET={r[1]}\nMOTO_PID={proc.pid}")
