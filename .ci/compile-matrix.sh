#!/usr/bin/env bash
# compile-matrix.sh — proves that Topi.cs compiles warning-free wherever it is vendored (issue 5):
#
#   1. compile matrix: host projects generated in a temp dir, each compiling the repository's Topi.cs
#      (by path, never a copy) plus a host file that uses the API, with TreatWarningsAsErrors,
#      AnalysisLevel=latest-recommended, IsAotCompatible (trim/AOT/single-file analyzers) and
#      GenerateDocumentationFile; pairwise over net8.0|net10.0, Nullable, ImplicitUsings,
#      LangVersion 12|default, TOPI_PUBLIC or not, and a plain host or one whose names collide
#      with Topi's (RootNamespace Topi; its own Topi, Token, HttpClientExtensions, TopiClient).
#   2. two assemblies: libraries A and B each compile their own copy of Topi.cs (internal mode),
#      B references A, and consumer C uses both public APIs (no CS0433/CS0436); a probe that
#      references A and touches Topi.TopiOptions must fail with CS0122 (internal by default).
#   3. Native AOT: publishes samples/Quickstart (or, while its Program.cs does not exist yet, a
#      smoke project from .ci/compile-matrix/aot-smoke) with PublishAot=true, fails on any
#      warning, and runs the native binary (no TOPI_* variables: it uses the embedded fake server).
#
# Usage: bash .ci/compile-matrix.sh [--quick] [--keep]
#   --quick  skip the Native AOT part
#   --keep   keep the temp dir with the generated projects and logs
# COMPILE_MATRIX_TOPI_CS=/path/Topi.cs checks another copy (to try a fix before making it);
# COMPILE_MATRIX_PARALLEL=N sets how many builds run at a time (default 2);
# COMPILE_MATRIX_AOT_STANDIN=1 publishes the aot-smoke stand-in even when the quickstart exists.
# (The override of Topi.cs does not reach samples/Quickstart, which links ../../Topi.cs itself.)
# Prints one PASS/FAIL line per check and closes with "compile-matrix: N passed, M failed";
# exits non-zero on any failure. Nothing is written inside the repository.
set -euo pipefail

QUICK=0
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "compile-matrix: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATES="$REPO/.ci/compile-matrix"
TOPI="${COMPILE_MATRIX_TOPI_CS:-$REPO/Topi.cs}"
PARALLEL="${COMPILE_MATRIX_PARALLEL:-2}"
[[ -f "$TOPI" ]] || { echo "compile-matrix: $TOPI not found" >&2; exit 2; }
command -v dotnet > /dev/null 2>&1 || { echo "compile-matrix: dotnet is not on PATH" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/topi-compile-matrix.XXXXXX")"
cleanup() {
    if [[ "$KEEP" == 1 ]]; then echo "compile-matrix: work dir kept at $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# On Ctrl-C or TERM, stop the builds this script started (its own background jobs) before cleaning up.
stop_jobs() {
    local pid
    for pid in $(jobs -p); do pkill -TERM -P "$pid" 2> /dev/null || true; kill "$pid" 2> /dev/null || true; done
    wait 2> /dev/null || true
}
trap 'trap - INT TERM; stop_jobs; exit 130' INT TERM
mkdir -p "$WORK/results" "$WORK/logs"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_UI_LANGUAGE=en

# The generated projects live under $WORK; these empty files stop MSBuild from importing anything
# from the directories above it.
for f in Directory.Build.props Directory.Build.targets Directory.Packages.props; do
    echo '<Project />' > "$WORK/$f"
done

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Warnings and errors of a build log (MSBuild prints each twice with -v:m; keep one of each).
diagnostics() { grep -E '(error|warning) [A-Z]+[0-9]+|: (error|warning) ' "$1" | sed -E 's/ \[[^]]*\.csproj[^]]*\]$//' | awk '!seen[$0]++' || true; }
# Any warning at all, whatever its source (compiler, analyzer, ILLink/ILC, MSBuild, NuGet), except the
# "0 Warning(s)" of MSBuild's summary.
has_warning() { grep -iE '(^|[^a-z])warning([^a-z]|$)' "$1" | grep -qviE '^[[:space:]]*0 warning\(s\)'; }

# record ID STATUS DESCRIPTION SECONDS [LOG]
record() { printf '%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "${5:-}" > "$WORK/results/$1"; }

# build ID LOG PROJECT [extra dotnet args...]: dotnet build in Release, minimal verbosity, one node.
build() {
    local log="$2" project="$3"; shift 3
    dotnet build "$project" -c Release -nologo -v:m -m:1 -nodeReuse:false "$@" > "$log" 2>&1
}

# ---------------------------------------------------------------------------------------------
# 1. The compile matrix
# ---------------------------------------------------------------------------------------------

# Pairwise over 6 two-valued axes in 6 builds (every pair of values of every two axes occurs; on net8.0
# the default language version is 12 anyway, so LangVersion=default only varies on net10.0).
# Columns: id tfm nullable implicitusings langversion(12|default) topi_public(yes|no) host(plain|collision) extra
MATRIX=(
    "m1 net8.0  enable  enable  12      no  plain     -"
    "m2 net8.0  enable  enable  12      yes collision -"
    "m3 net8.0  disable disable 12      no  plain     strict"
    "m4 net10.0 enable  disable default no  collision -"
    "m5 net10.0 disable enable  default yes plain     -"
    "m6 net10.0 disable disable 12      yes collision strict"
)

write_matrix_project() {
    local id="$1" tfm="$2" nullable="$3" implicit="$4" langversion="$5" public="$6" host="$7" extra="$8"
    local dir="$WORK/$id" props="" sources=""
    mkdir -p "$dir"
    [[ "$langversion" != default ]] && props+="    <LangVersion>$langversion</LangVersion>"$'\n'
    [[ "$public" == yes ]] && props+='    <DefineConstants>$(DefineConstants);TOPI_PUBLIC</DefineConstants>'$'\n'
    if [[ "$extra" == strict ]]; then
        # Settings some hosts use: strict compiler semantics, every warning wave, checked arithmetic.
        props+="    <Features>strict</Features>"$'\n'
        props+="    <WarningLevel>9999</WarningLevel>"$'\n'
        props+="    <CheckForOverflowUnderflow>true</CheckForOverflowUnderflow>"$'\n'
    fi
    if [[ "$host" == collision ]]; then
        props+="    <RootNamespace>Topi</RootNamespace>"$'\n'
        sources="    <Compile Include=\"$TEMPLATES/host/CollisionHost.cs\" />"
    else
        props+="    <RootNamespace>Contoso.Shop</RootNamespace>"$'\n'
        sources="    <Compile Include=\"$TEMPLATES/host/PlainHost.cs\" />"
    fi
    cat > "$dir/$id.csproj" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>$tfm</TargetFramework>
    <OutputType>Library</OutputType>
    <Nullable>$nullable</Nullable>
    <ImplicitUsings>$implicit</ImplicitUsings>
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
    <MSBuildTreatWarningsAsErrors>true</MSBuildTreatWarningsAsErrors>
    <AnalysisLevel>latest-recommended</AnalysisLevel>
    <IsAotCompatible>true</IsAotCompatible>
    <GenerateDocumentationFile>true</GenerateDocumentationFile>
    <EnableDefaultCompileItems>false</EnableDefaultCompileItems>
$props  </PropertyGroup>
  <ItemGroup>
    <Compile Include="$TOPI" />
$sources
  </ItemGroup>
</Project>
EOF
}

run_matrix_build() {
    local id="$1" tfm="$2" nullable="$3" implicit="$4" langversion="$5" public="$6" host="$7" extra="$8"
    local desc start log="$WORK/logs/$id.log"
    desc="$(printf '%-8s Nullable=%-7s ImplicitUsings=%-7s LangVersion=%-7s TOPI_PUBLIC=%-3s host=%-9s' \
        "$tfm" "$nullable" "$implicit" "$langversion" "$public" "$host")"
    [[ "$extra" == strict ]] && desc+=" +Features=strict,WarningLevel=9999,checked"
    start="$(now)"
    write_matrix_project "$@"
    if build "$id" "$log" "$WORK/$id/$id.csproj" && ! has_warning "$log"; then
        record "$id" PASS "$desc" "$(elapsed "$start")" "$log"
    else
        record "$id" FAIL "$desc" "$(elapsed "$start")" "$log"
    fi
}

# ---------------------------------------------------------------------------------------------
# 2. Two assemblies, each with its own internal copy of Topi.cs
# ---------------------------------------------------------------------------------------------

# write_two_project <csproj> <tfm> <outputtype, or "" for a library> <item>...
# An item ending in .csproj becomes a ProjectReference, any other a Compile include.
write_two_project() {
    local proj="$1" tfm="$2" outputtype="$3" item
    shift 3
    {
        echo '<Project Sdk="Microsoft.NET.Sdk">'
        echo '  <PropertyGroup>'
        echo "    <TargetFramework>$tfm</TargetFramework>"
        if [[ -n "$outputtype" ]]; then echo "    <OutputType>$outputtype</OutputType>"; fi
        cat <<'EOF'
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
    <MSBuildTreatWarningsAsErrors>true</MSBuildTreatWarningsAsErrors>
    <AnalysisLevel>latest-recommended</AnalysisLevel>
    <IsAotCompatible>true</IsAotCompatible>
    <GenerateDocumentationFile>true</GenerateDocumentationFile>
    <Nullable>enable</Nullable>
    <ImplicitUsings>disable</ImplicitUsings>
    <EnableDefaultCompileItems>false</EnableDefaultCompileItems>
  </PropertyGroup>
  <ItemGroup>
EOF
        for item in "$@"; do
            case "$item" in
                *.csproj) echo "    <ProjectReference Include=\"$item\" />" ;;
                *) echo "    <Compile Include=\"$item\" />" ;;
            esac
        done
        echo '  </ItemGroup>'
        echo '</Project>'
    } > "$proj"
}

write_two_assembly_projects() {
    local dir="$WORK/two"
    mkdir -p "$dir/LibA" "$dir/LibB" "$dir/Consumer" "$dir/Probe"
    write_two_project "$dir/LibA/LibA.csproj" net8.0 "" \
        "$TOPI" "$TEMPLATES/two-assemblies/AlphaService.cs"
    write_two_project "$dir/LibB/LibB.csproj" net10.0 "" \
        "$TOPI" "$TEMPLATES/two-assemblies/BetaService.cs" ../LibA/LibA.csproj
    write_two_project "$dir/Consumer/Consumer.csproj" net10.0 Exe \
        "$TEMPLATES/two-assemblies/Consumer.cs" ../LibA/LibA.csproj ../LibB/LibB.csproj
    write_two_project "$dir/Probe/Probe.csproj" net10.0 Exe \
        "$TEMPLATES/two-assemblies/InternalProbe.cs" ../LibA/LibA.csproj
}

run_two_assemblies() {
    local start log="$WORK/logs/two-assemblies.log" plog="$WORK/logs/internal-probe.log"
    start="$(now)"
    write_two_assembly_projects
    if build two "$log" "$WORK/two/Consumer/Consumer.csproj" && ! has_warning "$log"; then
        record t1 PASS "two assemblies: LibA(net8.0)+LibB(net10.0, refs A) each with internal Topi.cs, Consumer uses both" "$(elapsed "$start")" "$log"
    else
        record t1 FAIL "two assemblies: LibA(net8.0)+LibB(net10.0, refs A) each with internal Topi.cs, Consumer uses both" "$(elapsed "$start")" "$log"
    fi
    start="$(now)"
    # The probe must fail, and only because Topi.TopiOptions is inaccessible (LibA itself must build).
    if build probe "$plog" "$WORK/two/Probe/Probe.csproj"; then
        echo "expected the probe to fail with CS0122, but it compiled: Topi's types are visible outside LibA" >> "$plog"
        record t2 FAIL "internal by default: probe referencing LibA cannot see Topi.TopiOptions (CS0122)" "$(elapsed "$start")" "$plog"
    elif grep -q 'error CS0122' "$plog" && ! grep -E 'error [A-Z]+[0-9]+' "$plog" | grep -vq 'error CS0122'; then
        record t2 PASS "internal by default: probe referencing LibA cannot see Topi.TopiOptions (CS0122)" "$(elapsed "$start")"
    else
        echo "expected only CS0122 errors" >> "$plog"
        record t2 FAIL "internal by default: probe referencing LibA cannot see Topi.TopiOptions (CS0122)" "$(elapsed "$start")" "$plog"
    fi
}

# ---------------------------------------------------------------------------------------------
# 3. Native AOT
# ---------------------------------------------------------------------------------------------

ensure_native_toolchain() {
    if command -v clang > /dev/null 2>&1 && dpkg -s zlib1g-dev > /dev/null 2>&1; then return 0; fi
    echo "compile-matrix: installing clang and zlib1g-dev for Native AOT"
    local sudo=""
    [[ "$(id -u)" != 0 ]] && sudo="sudo"
    { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends clang zlib1g-dev; } \
        > "$WORK/logs/apt.log" 2>&1 || { tail -n 20 "$WORK/logs/apt.log"; return 1; }
}

run_aot() {
    local start log="$WORK/logs/aot-publish.log" rlog="$WORK/logs/aot-run.log" out="$WORK/aot-out"
    local project name desc
    start="$(now)"
    if [[ -f "$REPO/samples/Quickstart/Program.cs" && "${COMPILE_MATRIX_AOT_STANDIN:-0}" != 1 ]]; then
        project="$REPO/samples/Quickstart/Quickstart.csproj"
        name="Quickstart"
        desc="Native AOT: publish samples/Quickstart (linux-x64, PublishAot=true), zero warnings"
    else
        # Stand-in until the quickstart exists: Topi.cs and the fake server, as the quickstart links them.
        name="AotSmoke"
        project="$WORK/aot-smoke/AotSmoke.csproj"
        desc="Native AOT: publish the aot-smoke stand-in for samples/Quickstart (linux-x64, PublishAot=true), zero warnings"
        mkdir -p "$WORK/aot-smoke"
        cat > "$project" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
    <IsAotCompatible>true</IsAotCompatible>
    <InvariantGlobalization>true</InvariantGlobalization>
    <EnableDefaultCompileItems>false</EnableDefaultCompileItems>
  </PropertyGroup>
  <ItemGroup>
    <Compile Include="$TOPI" />
    <Compile Include="$REPO/Topi.Tests/Fake/*.cs" />
    <Compile Include="$TEMPLATES/aot-smoke/Program.cs" />
  </ItemGroup>
</Project>
EOF
    fi
    if ! ensure_native_toolchain; then
        record a1 FAIL "$desc [clang/zlib1g-dev could not be installed]" "$(elapsed "$start")" "$WORK/logs/apt.log"
        record a2 FAIL "Native AOT: run the native $name binary, exit code 0 [not run]" 0 ""
        return 0
    fi
    # --artifacts-path keeps bin/ and obj/ out of the repository (another build may be using them).
    if dotnet publish "$project" -c Release -r linux-x64 -p:PublishAot=true -o "$out" \
            --artifacts-path "$WORK/aot-artifacts" -nologo -v:m -nodeReuse:false > "$log" 2>&1 \
        && ! has_warning "$log" && [[ -x "$out/$name" ]]; then
        record a1 PASS "$desc" "$(elapsed "$start")" "$log"
    else
        record a1 FAIL "$desc" "$(elapsed "$start")" "$log"
        record a2 FAIL "Native AOT: run the native $name binary, exit code 0 [not run: publish failed]" 0 ""
        return 0
    fi
    start="$(now)"
    local unset_topi=() var rc=0
    for var in $(compgen -e); do [[ "$var" == TOPI_* ]] && unset_topi+=(-u "$var"); done
    env "${unset_topi[@]}" timeout 120 "$out/$name" < /dev/null > "$rlog" 2>&1 || rc=$?
    if [[ "$rc" == 0 ]]; then
        record a2 PASS "Native AOT: run the native $name binary ($(du -h "$out/$name" | cut -f1)), exit code 0" "$(elapsed "$start")" "$rlog"
    else
        echo "exit code $rc" >> "$rlog"
        record a2 FAIL "Native AOT: run the native $name binary, exit code 0 (got $rc)" "$(elapsed "$start")" "$rlog"
    fi
}

# ---------------------------------------------------------------------------------------------
# Run and report
# ---------------------------------------------------------------------------------------------

# Runs the given commands (one word-split string each) with at most $PARALLEL at a time.
run_pool() {
    local cmd
    for cmd in "$@"; do
        while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n || true; done
        # shellcheck disable=SC2086
        ( $cmd ) &
    done
    wait
}

report() {
    local file status desc secs log
    for file in "$@"; do
        [[ -f "$file" ]] || continue
        IFS=$'\t' read -r status desc secs log < "$file"
        printf '%s  %-3s %s (%ss)\n' "$status" "$(basename "$file")" "$desc" "$secs"
        if [[ "$status" == FAIL && -n "$log" && -f "$log" ]]; then
            local diags
            diags="$(diagnostics "$log")"
            if [[ -n "$diags" ]]; then echo "$diags" | head -n 60 | sed 's/^/      /'; else tail -n 30 "$log" | sed 's/^/      /'; fi
            echo "      (full log: $log$([[ "$KEEP" == 1 ]] || echo '; rerun with --keep to keep it'))"
        fi
    done
}

total_start="$(now)"
echo "compile-matrix: $TOPI, work dir $WORK, $PARALLEL builds at a time"

phase_start="$(now)"
jobs_list=("run_two_assemblies")
record t1 FAIL "two assemblies [the job died before it reported]" 0 ""
for row in "${MATRIX[@]}"; do
    jobs_list+=("run_matrix_build $row")
    record "${row%% *}" FAIL "$row [the job died before it reported]" 0 ""
done
run_pool "${jobs_list[@]}"
build_secs="$(elapsed "$phase_start")"
report "$WORK"/results/m* "$WORK"/results/t*
echo "compile-matrix: matrix and two-assembly builds took ${build_secs}s"

if [[ "$QUICK" == 1 ]]; then
    echo "compile-matrix: --quick, Native AOT skipped"
else
    phase_start="$(now)"
    run_aot
    report "$WORK"/results/a*
    echo "compile-matrix: Native AOT took $(elapsed "$phase_start")s"
fi

passed="$(cat "$WORK"/results/* | cut -f1 | grep -c '^PASS$' || true)"
failed="$(cat "$WORK"/results/* | cut -f1 | grep -c '^FAIL$' || true)"
echo "compile-matrix: total $(elapsed "$total_start")s"
echo "compile-matrix: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
