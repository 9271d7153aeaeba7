"""Drives `pyro mcp serve` through the Python `mcp` package's stdio client.

Usage: mcp_python_client.py PYRO_BIN, run inside a Git checkout holding
calc.py and test_calc.sh (see tests/mcp.rs), with PYRO_HOME set. Exits
non-zero with a message on the first failure; prints
"python mcp client: ok" when the whole workflow passed.
"""

import asyncio
import os
import sys
import tempfile

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

FIX = (
    "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
    "-    return a - b\n+    return a + b\n"
)


def attr(obj, snake, camel):
    """`mcp` 2.x names fields in snake_case, 1.x in camelCase."""
    return getattr(obj, snake, getattr(obj, camel, None))


def is_error(result):
    return bool(attr(result, "is_error", "isError"))


def text(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def ok(session, tool, arguments):
    result = await session.call_tool(tool, arguments)
    if is_error(result):
        sys.exit(f"{tool} failed: {text(result)}")
    structured = attr(result, "structured_content", "structuredContent")
    if structured is None:
        sys.exit(f"{tool}: no structured content")
    return structured


async def main(pyro_bin):
    params = StdioServerParameters(
        command=pyro_bin, args=["mcp", "serve"], env=dict(os.environ), cwd=os.getcwd()
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert "workspace_create" in (init.instructions or ""), init.instructions
            tools = await session.list_tools()
            names = sorted(tool.name for tool in tools.tools)
            assert "workspace_exec" in names and "vm_run" not in names, names
            for tool in tools.tools:
                assert attr(tool, "output_schema", "outputSchema"), tool.name

            missing = await session.call_tool("workspace_status", {"workspace": "nope"})
            assert is_error(missing) and "no workspace 'nope'" in text(missing), text(missing)

            created = await ok(session, "workspace_create", {})
            ws = created["id"]
            try:
                read = await ok(session, "workspace_file_read", {"workspace": ws, "path": "calc.py"})
                assert "return a - b" in read["content"], read
                await ok(session, "workspace_patch_apply", {"workspace": ws, "patch": FIX})
                run = await ok(session, "workspace_exec", {"workspace": ws, "command": "sh test_calc.sh"})
                assert run["exit_code"] == 0 and "PASS" in run["stdout"]["text"], run
                diff = await ok(session, "workspace_diff", {"workspace": ws})
                assert [f["path"] for f in diff["files"]] == ["calc.py"], diff
                # Inside the project: the server refuses host paths elsewhere.
                with tempfile.TemporaryDirectory(dir=os.getcwd()) as out:
                    target = os.path.join(out, "calc.py")
                    await ok(session, "workspace_export", {"workspace": ws, "path": "calc.py", "output": target})
                    with open(target) as exported:
                        assert "a + b" in exported.read()
                await ok(session, "workspace_reset", {"workspace": ws})
                diff = await ok(session, "workspace_diff", {"workspace": ws})
                assert diff["files"] == [], diff
            finally:
                await ok(session, "workspace_delete", {"workspace": ws})
    print("python mcp client: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
