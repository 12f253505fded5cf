"""Coordinator pages (study wizard, dashboard), mounted at /studies/."""

from django.urls import path

from readerstudy import coordinator_views as views

app_name = "studies"
urlpatterns = [
    path("", views.study_list, name="list"),
    path("new/", views.study_create, name="create"),
    path("<int:pk>/", views.study_detail, name="detail"),
    path("<int:pk>/cases/<int:number>/", views.study_case, name="case"),
    path("<int:pk>/edit/", views.study_edit, name="edit"),
    path("<int:pk>/open/", views.study_open, name="open"),
    path("<int:pk>/close/", views.study_close, name="close"),
    path("<int:pk>/clone/", views.study_clone, name="clone"),
    path("<int:pk>/readers/add/", views.reader_add, name="reader-add"),
    path("<int:pk>/readers/<int:user_id>/remove/", views.reader_remove, name="reader-remove"),
    path("<int:pk>/questions/add/", views.question_add, name="question-add"),
    path("<int:pk>/questions/<int:question_id>/remove/", views.question_remove, name="question-remove"),
    path("<int:pk>/case-list/", views.case_list_upload, name="case-list"),
]
