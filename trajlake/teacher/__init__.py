"""The teacher LLM: a client for any OpenAI-compatible endpoint, with usage and budget accounting.

`trajlake.teacher.double` is a scripted OpenAI-compatible server for tests and demos.
"""

from trajlake.teacher.accounting import Budget, Usage, UsageMeter
from trajlake.teacher.client import Teacher, teacher_id
from trajlake.teacher.reply import TeacherReply

__all__ = ["Budget", "Teacher", "TeacherReply", "Usage", "UsageMeter", "teacher_id"]
