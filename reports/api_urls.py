"""Agreement report API (researchers and coordinators), mounted under /api/."""

from django.urls import path

from reports import api

urlpatterns = [
    path("reports/studies/<int:pk>/", api.ReportDetailApi.as_view(), name="api-report-detail"),
    path("reports/studies/<int:pk>/bootstrap/", api.ReportBootstrapStartApi.as_view(), name="api-report-bootstrap"),
    path("reports/runs/<int:pk>/", api.ReportRunDetailApi.as_view(), name="api-report-run"),
    path("reports/runs/<int:pk>/result/", api.ReportRunResultApi.as_view(), name="api-report-run-result"),
]
