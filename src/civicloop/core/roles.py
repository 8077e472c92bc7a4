"""The roles a user of civicloop can have. Who may fire which transition is part of each domain's
transition table; who may see which record is enforced by each domain's queries."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RESIDENT = "resident"  # 居民
    OPERATOR = "operator"  # 话务员（受理）
    DISPATCHER = "dispatcher"  # 派单员
    HANDLER = "handler"  # 承办单位工作人员
    GRID_WORKER = "grid_worker"  # 网格员
    SUPERVISOR = "supervisor"  # 督办人员
    ANALYST = "analyst"  # 分析人员
    ADMIN = "admin"  # 管理员
    SYSTEM = "system"  # 系统（定时任务、自动流转）


# everyone who works in the system (not the residents it serves)
STAFF = frozenset(r for r in Role if r != Role.RESIDENT)
