from django.urls import path

from retrieval import views

app_name = "retrieval"

urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/new/", views.dataset_create, name="dataset-create"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/import/", views.import_create, name="import-create"),
    path("datasets/<int:pk>/import/confirm/", views.import_confirm, name="import-confirm"),
    path("imports/<int:pk>/", views.import_detail, name="import-detail"),
    path("imports/<int:pk>/retry/", views.import_retry, name="import-retry"),
    path("images/<int:pk>/", views.image_detail, name="image-detail"),
    path("images/<int:pk>/<str:kind>/", views.image_file, name="image-file"),
]

from retrieval import run_views  # noqa: E402

urlpatterns += [
    path("datasets/<int:pk>/runs/", run_views.run_list, name="run-list"),
    path("datasets/<int:pk>/runs/new/", run_views.run_create, name="run-create"),
    path("datasets/<int:pk>/compare/", run_views.compare, name="compare"),
    path("runs/<int:pk>/", run_views.run_detail, name="run-detail"),
    path("runs/<int:pk>/resume/", run_views.run_resume, name="run-resume"),
    path("runs/<int:pk>/figures/<str:name>.png", run_views.run_figure, name="run-figure"),
    path("runs/<int:pk>/saliency/<int:image_id>.png", run_views.run_saliency, name="run-saliency"),
    path("runs/<int:pk>/search/", run_views.search_page, name="search"),
    path("searches/<int:pk>/", run_views.search_upload_result, name="search-upload"),
    path("searches/<int:pk>/retry/", run_views.search_upload_retry, name="search-retry"),
]

from retrieval import pacs_views  # noqa: E402

urlpatterns += [path("datasets/<int:pk>/import/pacs/", pacs_views.dicomweb_import, name="dicomweb-import")]

from retrieval import weights_views  # noqa: E402

urlpatterns += [
    path("weights/fetch/", weights_views.weights_fetch_start, name="weights-fetch-start"),
    path("weights/<int:pk>/", weights_views.weights_fetch_detail, name="weights-fetch"),
    path("weights/<int:pk>/progress/", weights_views.weights_fetch_progress, name="weights-fetch-progress"),
    path("weights/<int:pk>/retry/", weights_views.weights_fetch_again, name="weights-fetch-retry"),
]
