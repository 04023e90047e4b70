"""Session stores for agent frameworks, over a ThreadStore: ``openai_agents``, ``langchain`` and
``pydantic_ai``. Each imports its framework only when it is imported itself (``import
threadstore`` loads none of them); install them with the extras ``threadstore[openai-agents]``,
``threadstore[langchain]`` and ``threadstore[pydantic-ai]``.

Every framework item becomes one real Message of the session's thread -- role, content, tool
calls, tool call id, token usage in ``metrics`` -- so sessions are listed, searched and counted
like any thread, and keeps the item itself in ``attributes["item"]``, so it comes back exactly as
it was added. A framework's system message is stored with the role ``developer`` (system messages
are never stored), its item keeping the role ``system``. See docs/integrations.md.
"""
