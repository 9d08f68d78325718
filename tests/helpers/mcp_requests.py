"""What an in-process JSON-RPC call to ``/mcp`` sends: Streamable HTTP wants both answer kinds accepted."""

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
