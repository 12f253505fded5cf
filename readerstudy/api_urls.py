"""Study API for coordinators (writes) and researchers (reads), mounted under /api/."""

from django.urls import path

from readerstudy import api

urlpatterns = [
    path("studies/", api.StudyListApi.as_view(), name="api-study-list"),
    path("studies/create/", api.StudyCreateApi.as_view(), name="api-study-create"),
    path("studies/<int:pk>/", api.StudyDetailApi.as_view(), name="api-study-detail"),
    path("studies/<int:pk>/update/", api.StudyUpdateApi.as_view(), name="api-study-update"),
    path("studies/<int:pk>/build/", api.StudyBuildApi.as_view(), name="api-study-build"),
    path("studies/<int:pk>/case-list/", api.StudyCaseListApi.as_view(), name="api-study-case-list"),
    path("studies/<int:pk>/cases/", api.StudyCasesApi.as_view(), name="api-study-cases"),
    path("studies/<int:pk>/progress/", api.StudyProgressApi.as_view(), name="api-study-progress"),
    path("studies/<int:pk>/open/", api.StudyOpenApi.as_view(), name="api-study-open"),
    path("studies/<int:pk>/close/", api.StudyCloseApi.as_view(), name="api-study-close"),
    path("studies/<int:pk>/clone/", api.StudyCloneApi.as_view(), name="api-study-clone"),
    path("studies/<int:pk>/readers/", api.AssignmentAddApi.as_view(), name="api-study-reader-add"),
    path("studies/<int:pk>/readers/<int:user_id>/", api.AssignmentRemoveApi.as_view(), name="api-study-reader-remove"),
    path("studies/<int:pk>/questions/", api.QuestionAddApi.as_view(), name="api-study-question-add"),
    path(
        "studies/<int:pk>/questions/<int:question_id>/",
        api.QuestionRemoveApi.as_view(),
        name="api-study-question-remove",
    ),
]
