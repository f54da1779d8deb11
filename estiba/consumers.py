"""The event feed: one websocket per page, delivering what the user may see.

A user's socket joins ``user.<id>``; an admin's also joins ``events`` (every
event). The projection (``estiba.projection.notify``) chooses the groups, so
a user never receives an event about another user's object.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from estiba import permissions
from estiba.projection import ADMIN_GROUP, user_group


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user and user.is_authenticated):
            await self.close(code=4401)
            return
        self.groups_joined = [user_group(user.pk)]
        if permissions.is_admin(user):
            self.groups_joined = [ADMIN_GROUP]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def estiba_event(self, message: dict) -> None:
        await self.send_json({k: v for k, v in message.items() if k != "type"})
