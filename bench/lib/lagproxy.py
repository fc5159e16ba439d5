# A TCP proxy that holds every chunk LAG seconds each way, to give a local
# object store (moto) the round trip of a remote one.
#   python3 bench/lib/lagproxy.py LISTEN_PORT TARGET_PORT LAG_SECONDS
import asyncio, sys
LISTEN, TARGET, LAG = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def pipe(r, w):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            await asyncio.sleep(LAG)
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection('127.0.0.1', TARGET)
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
async def main():
    server = await asyncio.start_server(handle, '127.0.0.1', LISTEN)
    async with server:
        await server.serve_forever()
asyncio.run(main())
