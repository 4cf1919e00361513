"""The image's HEALTHCHECK: is the agent's exporter answering on /-/healthy?

The URL comes from NETPROBE_HEALTH_URL (default http://127.0.0.1:9469/-/healthy). A 401 counts
as healthy: with basic auth configured the server is up and refusing strangers, as it should.
The certificate is not checked: this is the container asking its own process over loopback.
"""

import os
import ssl
import sys
import urllib.error
import urllib.request

URL = os.environ.get("NETPROBE_HEALTH_URL", "http://127.0.0.1:9469/-/healthy")

context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(URL, timeout=4, context=context) as response:
        sys.exit(0 if response.status == 200 else 1)
except urllib.error.HTTPError as refused:
    sys.exit(0 if refused.code == 401 else 1)
except OSError as unreachable:
    print(f"unhealthy: {unreachable}", file=sys.stderr)
    sys.exit(1)
