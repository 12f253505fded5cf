from django.urls import path

from retrieval import api, pacs_api

urlpatterns = [
    path("datasets/", api.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/create/", api.DatasetCreateApi.as_view(), name="api-dataset-create"),
    path("datasets/<int:pk>/images/", api.ImageListApi.as_view(), name="api-image-list"),
    path("datasets/<int:pk>/imports/", api.ImportCreateApi.as_view(), name="api-import-create"),
    path("images/<int:pk>/", api.ImageDetailApi.as_view(), name="api-image-detail"),
    path("imports/<int:pk>/", api.ImportDetailApi.as_view(), name="api-import-detail"),
]

urlpatterns += [
    path("datasets/<int:pk>/runs/", api.RunListApi.as_view(), name="api-run-list"),
    path("datasets/<int:pk>/runs/create/", api.RunCreateApi.as_view(), name="api-run-create"),
    path("datasets/<int:pk>/splits/create/", api.SplitCreateApi.as_view(), name="api-split-create"),
    path("runs/<int:pk>/", api.RunDetailApi.as_view(), name="api-run-detail"),
    path("runs/<int:pk>/resume/", api.RunResumeApi.as_view(), name="api-run-resume"),
    path("runs/<int:pk>/search/", api.SearchApi.as_view(), name="api-search"),
    path("searches/<int:pk>/", api.SearchDetailApi.as_view(), name="api-search-detail"),
]

urlpatterns += [  # PACS imports over DICOMweb (retrieval.pacs_api)
    path("dicomweb/search/", pacs_api.DicomwebSearchApi.as_view(), name="api-dicomweb-search"),
    path("datasets/<int:pk>/imports/dicomweb/", pacs_api.DicomwebImportApi.as_view(), name="api-dicomweb-import"),
]
