"""A lesson for real-link scenarios: `liveclass serve` reachable on loopback and from inside a LinkNamespace,
its /api/stats polled, a pool of headless Chromiums, and the lesson live from the teacher page (browser
simulcast) or from a one-layer aiortc WHIP publisher of a clip (the server-side ladder's case). Everything is
entered into the caller's ExitStack, so it unwinds with it, whatever happened.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from testkit.capped_link import ClipPublisher, ServerStatsPoller, go_live
from testkit.chromium import BrowserPool
from testkit.netns import LinkNamespace
from testkit.server import ServerProcess


@dataclass
class LinkLesson:
    server: ServerProcess
    poller: ServerStatsPoller
    pool: BrowserPool
    loop_base: str            # the server's address for pages and peers on loopback
    ns_base: str              # the server's address from inside the namespace (the veth's host end)
    teacher: Optional[Any]    # the teacher's page, when the lesson comes from it


def start_link_lesson(stack: ExitStack, playwright: Any, workdir: Path, ns: LinkNamespace, room: str,
                      source: str, clip: Optional[Path] = None, server_args: tuple[str, ...] = ()) -> LinkLesson:
    # HTTP on every address: the loopback pages use 127.0.0.1, the namespace reaches the veth's host end
    server = ServerProcess(host="0.0.0.0", media_hosts=("127.0.0.1", ns.host_ip), log_path=workdir / "server.log",
                           extra=server_args)
    stack.callback(server.stop)
    loop_base, ns_base = f"http://127.0.0.1:{server.port}", f"http://{ns.host_ip}:{server.port}"
    poller = stack.enter_context(ServerStatsPoller(loop_base, room, server.token(room, "admin")))
    pool = stack.enter_context(BrowserPool(playwright, workdir))
    teacher = None
    if source == "teacher-page":
        teacher = go_live(pool, loop_base, server, room)
    else:
        assert clip is not None, "whip-clip needs a clip"
        stack.enter_context(ClipPublisher(loop_base, room, server.token(room, "teacher"), clip))
    return LinkLesson(server, poller, pool, loop_base, ns_base, teacher)
