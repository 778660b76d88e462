"""Printing a permissions answer (``endpoints permissions``, ``tables permissions``)."""

from __future__ import annotations

from modelport.client.cli.acl import render_acl

ACL = {
    "object_id": "/tables/main.serving.chat_payload",
    "access_control_list": [
        {"user_name": "alice", "all_permissions": [{"permission_level": "SELECT", "inherited": False}]},
        {
            "user_name": "bob",
            "all_permissions": [
                {
                    "permission_level": "MANAGE",
                    "inherited": True,
                    "inherited_from_object": ["/serving-endpoints/e1", "/serving-endpoints/e2"],
                }
            ],
        },
        {"group_name": "team", "all_permissions": []},
        {"display_name": "nameless"},
    ],
}


def test_inherited_levels_are_marked_or_say_where_they_come_from() -> None:
    assert render_acl(ACL, "PERMISSION") == (
        "PRINCIPAL  TYPE   PERMISSION\n"
        "alice      user   SELECT\n"
        "bob        user   MANAGE (inherited)\n"
        "team       group  -\n"
        "-          ?      -"
    )
    assert render_acl(ACL, "PRIVILEGE", sources=True).splitlines()[2] == (
        "bob        user   MANAGE (from /serving-endpoints/e1, /serving-endpoints/e2)"
    )
