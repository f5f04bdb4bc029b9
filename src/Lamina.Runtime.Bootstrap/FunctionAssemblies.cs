using System.Reflection;
using System.Runtime.Loader;

namespace Lamina.Runtime.Bootstrap;

/// <summary>
/// Loads the function's assemblies into the default load context, as AWS's runtime does, so that the function and
/// Lamina share one <c>Lamina.Runtime</c> (the runtime's own copy: the function's <c>ILambdaContext</c> is the one the
/// bootstrap implements). What the runtime does not have comes from the task root: through the function's
/// <c>deps.json</c> (NuGet layouts, <c>runtimes/linux-x64/native</c> libraries) when it has one, else by file name.
/// </summary>
internal static class FunctionAssemblies
{
    private static string s_taskRoot = "";
    private static AssemblyDependencyResolver? s_resolver;
    private static bool s_resolverTried;
    private static string? s_mainAssemblyPath;

    public static Assembly LoadMain(string taskRoot, string assemblyName)
    {
        s_taskRoot = taskRoot;
        var path = Path.Combine(taskRoot, assemblyName + ".dll");
        s_mainAssemblyPath = path;
        AssemblyLoadContext.Default.Resolving += static (context, name) => Resolve(context, name);
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += static (assembly, name) => ResolveNative(name);
        if (!File.Exists(path))
        {
            throw new LambdaValidationException($"Could not find the specified handler assembly with the file name '{assemblyName}.dll'. The assembly should be located in the root of your uploaded .zip file.");
        }
        try
        {
            // By path, not by name: a name lookup would parse an AssemblyName and probe the runtime's own assemblies
            // first, ~5 ms of cold start for nothing (a function is never one of them).
            return AssemblyLoadContext.Default.LoadFromAssemblyPath(path);
        }
        catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
        {
            throw new LambdaValidationException($"Unable to load assembly '{assemblyName}': {e.Message}", e);
        }
    }

    private static Assembly? Resolve(AssemblyLoadContext context, AssemblyName name)
    {
        // The handler's own assembly needs no deps.json lookup.
        if (s_mainAssemblyPath is not null && string.Equals(name.Name, Path.GetFileNameWithoutExtension(s_mainAssemblyPath), StringComparison.OrdinalIgnoreCase))
        {
            return context.LoadFromAssemblyPath(s_mainAssemblyPath);
        }
        var path = Resolver()?.ResolveAssemblyToPath(name);
        if (path is null && name.Name is { } simpleName)
        {
            var candidate = Path.Combine(s_taskRoot, simpleName + ".dll");
            path = File.Exists(candidate) ? candidate : null;
        }
        return path is null ? null : context.LoadFromAssemblyPath(path);
    }

    private static nint ResolveNative(string name)
    {
        var path = Resolver()?.ResolveUnmanagedDllToPath(name);
        return path is not null && NativeLibraryLoad(path, out var handle) ? handle : 0;
    }

    private static bool NativeLibraryLoad(string path, out nint handle) =>
        System.Runtime.InteropServices.NativeLibrary.TryLoad(path, out handle);

    /// <summary>Reading deps.json costs a few ms, so only when something is missing from the runtime.</summary>
    private static AssemblyDependencyResolver? Resolver()
    {
        if (!s_resolverTried)
        {
            s_resolverTried = true;
            try
            {
                if (s_mainAssemblyPath is not null && File.Exists(Path.ChangeExtension(s_mainAssemblyPath, ".deps.json")))
                {
                    s_resolver = new AssemblyDependencyResolver(s_mainAssemblyPath);
                }
            }
            catch (InvalidOperationException)
            {
                // No host policy to read it with (not started by the dotnet host): fall back to file names.
            }
        }
        return s_resolver;
    }
}
