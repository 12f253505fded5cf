"""Reader pages (the reading UI), mounted at /read/."""

from django.urls import path

from annotations import reader_views as views

app_name = "reading"

urlpatterns = [
    path("", views.study_list, name="study-list"),
    path("<int:study_id>/", views.study_intro, name="study"),
    path("<int:study_id>/start/", views.study_start, name="start"),
    path("<int:study_id>/case/<int:index>/", views.case_detail, name="case"),
    path("<int:study_id>/case/<int:index>/image/<slug:key>.png", views.case_image, name="image"),
    path("<int:study_id>/case/<int:index>/saliency/<slug:key>.png", views.case_saliency, name="saliency"),
    path("<int:study_id>/case/<int:index>/values/<slug:key>.png", views.case_values, name="values"),
    path("<int:study_id>/done/", views.study_done, name="done"),
    path("<int:study_id>/closed/", views.study_closed, name="closed"),
]
