"""URL configuration."""

from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from annotations import reader_views
from readerstudy import views

handler400 = "readerstudy.views.error_400"
handler403 = "readerstudy.views.error_403"
handler404 = "readerstudy.views.error_404"
handler500 = "readerstudy.views.error_500"


def _api_docs(view):
    relaxed = {"script-src": ["'unsafe-inline'"], "style-src": ["'unsafe-inline'"], "worker-src": ["blob:"]}
    return login_required(csp_update(relaxed)(view))


api_patterns = [
    path("", include("retrieval.api_urls")),
    path("", include("readerstudy.api_urls")),
    path("", include("annotations.api_urls")),
    path("", include("reports.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Signed-in users only (anonymous: the login page); their bundled pages carry inline script and style.
    path("docs/", _api_docs(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc/", _api_docs(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
]

urlpatterns = [
    path("", reader_views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    # Pages name their icon; this answers browsers and tools that ask for /favicon.ico regardless.
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=True)),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("retrieval.urls")),
    path("studies/", include("readerstudy.coordinator_urls")),
    path("read/", include("annotations.reader_urls")),
    path("reports/", include("reports.urls")),
]
