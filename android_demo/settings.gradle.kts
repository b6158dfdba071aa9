// The Veil Android demo: `:app` (the Android app) on `:core` (pure Kotlin, also built offline by Maven: core/pom.xml).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "VeilDemo"
include(":app", ":core")
