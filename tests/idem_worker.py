"""A separate router process for the multi-instance test: sends keyed messages via Redis.

python -m tests.idem_worker SETTINGS_JSON KEYS  -> prints one JSON line per result
"""

from __future__ import annotations

import sys

import anyio
import orjson

from router import Message, Router, load_settings


async def main(settings_json: str, keys: int) -> None:
    settings = load_settings(**orjson.loads(settings_json))
    async with Router(settings) as router, anyio.create_task_group() as tg:

        async def one(i: int) -> None:
            message = Message(
                mobiles=["13800000001", "13800000002"],
                scene="login_code",
                params={"code": str(i)},
                idempotency_key=f"order-{i}",
            )
            result = await router.send(message)
            line = {"key": i, "id": result.message_id, "replay": result.idempotent_replay}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")

        for i in range(keys):
            tg.start_soon(one, i)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
