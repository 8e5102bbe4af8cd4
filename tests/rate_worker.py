"""A separate router process for the shared rate-limit test: sends N single-recipient messages
as fast as its concurrency allows, then prints how many it sent.

python -m tests.rate_worker SETTINGS_JSON N
"""

from __future__ import annotations

import sys

import anyio
import orjson

from router import Message, Router, load_settings


async def main(settings_json: str, n: int, offset: int) -> None:
    settings = load_settings(**orjson.loads(settings_json))
    ok = 0
    errors: set[str] = set()
    async with Router(settings) as router:
        for name in router.providers:
            router.set_enabled(name, name == "v1platform")
        numbers = iter(range(offset, offset + n))

        async def worker() -> None:
            nonlocal ok
            for i in numbers:
                message = Message(mobiles=[f"137{i:08d}"], content="rate test")
                result = await router.send(message)
                ok += result.ok
                if not result.ok:
                    errors.add(str([r.error for r in result.recipients]))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(worker)
    sys.stdout.write(orjson.dumps({"sent": ok, "errors": sorted(errors)[:5]}).decode() + "\n")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
