// The core as a plain Kotlin/JVM library for the app (the same sources Maven builds and tests offline with
// Kotlin 1.3: pom.xml, test.sh). `./gradlew :core:test` runs its JUnit 5 tests here too; the live test needs the
// repository's .venv (make setup) to start `veil serve`.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
        allWarningsAsErrors.set(true)
    }
}

dependencies {
    // org.json is part of the Android platform; on a desktop JVM the tests use AOSP's copy
    compileOnly(libs.android.json)
    testImplementation(libs.android.json)
    testImplementation(libs.junit.jupiter)
    testRuntimeOnly(libs.junit.platform.launcher)
}

tasks.test {
    useJUnitPlatform()
    systemProperty("veil.repo", rootDir.parentFile.absolutePath)
}
