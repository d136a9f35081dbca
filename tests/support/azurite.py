"""Starts Azurite's blob service on loopback and prints its settings as KEY=VALUE lines.

Usage: azurite.py DIR PORT [CONTAINER]. Leaves the server running with its pid in
DIR/azurite.pid. Makes the container and three container SAS tokens signed with the
emulator's well-known account key: a write-only one (sp=cw: create and write, what veil
gets; Azurite refuses Put Block with `c` alone), a read/list one for the test to fetch
what landed, and an all-powerful one for the verify-bucket test.
"""
import datetime, os, subprocess, sys, time, urllib.request

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

d, port = sys.argv[1], int(sys.argv[2])
container = sys.argv[3] if len(sys.argv) > 3 else "rec"
launcher = subprocess.run(["bash", os.path.join(os.path.dirname(__file__), "../../scripts/install-azurite.sh")],
                          check=True, capture_output=True, text=True).stdout.strip()
os.makedirs(d, exist_ok=True)
log = open(os.path.join(d, "azurite.log"), "wb")
proc = subprocess.Popen([launcher, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck",
                         "--inMemoryPersistence", "--debug", os.path.join(d, "debug.log")],
                        stdout=log, stderr=log, start_new_session=True)
open(os.path.join(d, "azurite.pid"), "w").write(str(proc.pid))
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
base = f"http://127.0.0.1:{port}/{ACCOUNT}"
svc = BlobServiceClient(account_url=base, credential={"account_name": ACCOUNT, "account_key": KEY}, retry_total=0)
for _ in range(150):
    if proc.poll() is not None:
        sys.exit("azurite exited: " + open(os.path.join(d, "azurite.log")).read())
    try:
        svc.create_container(container)
        break
    except Exception as e:  # not up yet
        if "ContainerAlreadyExists" in str(e):
            break
        time.sleep(0.1)
else:
    sys.exit("azurite did not start")
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)


def sas(**perms):
    return generate_container_sas(ACCOUNT, container, account_key=KEY, permission=ContainerSasPermissions(**perms), expiry=expiry)


print(f"AZURE_BASE={base}\nAZURE_CONTAINER={container}\nWRITER_SAS={sas(create=True, write=True)}\n"
      f"READER_SAS={sas(read=True, list=True)}\nALL_SAS={sas(read=True, write=True, create=True, list=True, delete=True)}\n"
      f"AZURITE_PID={proc.pid}")
