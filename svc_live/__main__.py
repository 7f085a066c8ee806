"""svc_live: live sessions (`python -m svc_live`)."""

import uvloop

from svc_live.server import serve

if __name__ == "__main__":
    uvloop.run(serve())
