"""A real MCP server (the official SDK's MCPServer, FastMCP's successor) that the health-check
tests start over stdio or streamable HTTP.

Its tools are read from a JSON file at start, `[{"name": ..., "description": ..., "params":
["a", "b"]}]`, so a test changes the tools a later start (or a later stdio probe, which starts
the server afresh) offers by rewriting the file. `--hang` never answers `initialize`; `--exit`
dies at once; `--tools-fail` answers `initialize` and fails `tools/list`.

    python tests/mcp_test_server.py stdio --tools FILE [--hang | --exit]
    python tests/mcp_test_server.py http|sse --port PORT --tools FILE [--tools-fail]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from mcp.server.mcpserver import MCPServer


def _tool(params: list[str]):
    # MCPServer takes a tool's input schema from its signature; build one with these parameters.
    namespace: dict = {}
    exec(f"def tool({', '.join(f'{name}: str' for name in params)}) -> str:\n    return 'ok'", namespace)
    return namespace["tool"]


class ToolsUnavailable(MCPServer):
    """Answers initialize, fails tools/list."""

    async def list_tools(self):
        raise RuntimeError("the tool registry is unavailable")


def build_server(tools_file: Path, hang: bool, tools_fail: bool = False) -> MCPServer:
    @asynccontextmanager
    async def lifespan(_server):
        if hang:
            await asyncio.Event().wait()  # never serves: initialize is never answered
        yield {}

    server = (ToolsUnavailable if tools_fail else MCPServer)("spanstream-test", version="1.2.3", lifespan=lifespan)
    for spec in json.loads(tools_file.read_text()):
        server.add_tool(_tool(spec.get("params", [])), name=spec["name"], description=spec.get("description"))
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http", "sse"])
    parser.add_argument("--tools", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--exit", action="store_true")
    parser.add_argument("--tools-fail", action="store_true")
    args = parser.parse_args()
    if args.exit:
        print("crashing on purpose", file=sys.stderr)
        sys.exit(3)
    server = build_server(args.tools, args.hang, args.tools_fail)
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "sse":
        server.run("sse", host="127.0.0.1", port=args.port)
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
