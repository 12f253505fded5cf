"""Reading API for readers (cases, drafts, answers, flags, heartbeats), mounted under /api/."""

from django.urls import path

from annotations import api

case = "reading/studies/<int:study_id>/cases/<int:index>/"

urlpatterns = [
    path("reading/studies/", api.ReadingStudyListApi.as_view(), name="api-reading-studies"),
    path(case, api.ReadingCaseDetailApi.as_view(), name="api-reading-case"),
    path(case + "draft/", api.DraftSaveApi.as_view(), name="api-reading-draft"),
    path(case + "answer/", api.AnswerSubmitApi.as_view(), name="api-reading-answer"),
    path(case + "heartbeat/", api.VisitHeartbeatApi.as_view(), name="api-reading-heartbeat"),
    path(case + "flag/", api.FlagSetApi.as_view(), name="api-reading-flag"),
    path(case + "flag/clear/", api.FlagClearApi.as_view(), name="api-reading-flag-clear"),
]
