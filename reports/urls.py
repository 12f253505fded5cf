"""Agreement report pages and downloads, mounted at /reports/."""

from django.urls import path

from reports import views

app_name = "reports"
urlpatterns = [
    path("", views.report_index, name="index"),
    path("studies/<int:pk>/", views.report_study, name="study"),
    path("studies/<int:pk>/bootstrap/", views.report_bootstrap_start, name="bootstrap"),
    path("studies/<int:pk>/download/<str:fmt>/", views.report_download, name="download"),
]
