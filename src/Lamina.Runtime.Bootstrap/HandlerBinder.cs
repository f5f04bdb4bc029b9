using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;
using Lamina.Runtime.Hosting;

namespace Lamina.Runtime.Bootstrap;

/// <summary>
/// Turns a handler string into an <see cref="InvocationHandler"/>, with the rules of AWS's .NET runtime:
/// <list type="number">
/// <item><c>Assembly::Namespace.Type::Method</c>: the assembly is <c>/var/task/Assembly.dll</c>.</item>
/// <item>The method: public or not, static or instance (the type is created once per environment with its
/// parameterless constructor), not generic, abstract, <c>params</c> or <c>async void</c>, one name without overloads.</item>
/// <item>Parameters: none, <c>(input)</c>, <c>(input, ILambdaContext)</c> or <c>(ILambdaContext)</c>; an input of type
/// <see cref="Stream"/> gets the raw event, any other type is deserialized.</item>
/// <item>Result: <c>void</c>, <c>Task</c>, <c>ValueTask</c> (empty response), <c>T</c>, <c>Task&lt;T&gt;</c>,
/// <c>ValueTask&lt;T&gt;</c> (serialized; a <see cref="Stream"/> is sent as it is).</item>
/// <item>The serializer: <see cref="LambdaSerializerAttribute"/> on the method, else on the assembly, else
/// <see cref="DefaultLambdaJsonSerializer"/> (Lamina's default; AWS requires the attribute).</item>
/// </list>
/// Reflection runs once, here; each invocation then costs one <see cref="MethodBase.Invoke(object?, BindingFlags, Binder?, object?[], System.Globalization.CultureInfo?)"/>
/// plus the serializer's calls (<c>DoNotWrapExceptions</c>: the handler's exceptions arrive as thrown).
/// </summary>
[UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "The bootstrap is never trimmed; it binds user code by reflection by design.")]
[UnconditionalSuppressMessage("Trimming", "IL2060", Justification = "The bootstrap is never trimmed.")]
[UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "The bootstrap is never trimmed.")]
[UnconditionalSuppressMessage("AOT", "IL3050", Justification = "The bootstrap runs on the JIT.")]
internal static class HandlerBinder
{
    private const BindingFlags Invoke = BindingFlags.DoNotWrapExceptions;
    private const string Format = "The valid format is 'ASSEMBLY::TYPE::METHOD'.";

    private static readonly MethodInfo DeserializeMethod = typeof(ILambdaSerializer).GetMethod(nameof(ILambdaSerializer.Deserialize))!;
    private static readonly MethodInfo SerializeMethod = typeof(ILambdaSerializer).GetMethod(nameof(ILambdaSerializer.Serialize))!;

    public static InvocationHandler Bind(string handler, string taskRoot)
    {
        var (assemblyName, typeName, methodName) = Parse(handler);
        var assembly = FunctionAssemblies.LoadMain(taskRoot, assemblyName);
        var type = assembly.GetType(typeName, throwOnError: false)
            ?? throw new LambdaValidationException($"Unable to load type '{typeName}' from assembly '{assemblyName}'.");
        var method = FindMethod(type, methodName, assemblyName);
        Validate(type, method);

        var parameters = method.GetParameters();
        var inputType = parameters.Length switch
        {
            0 => null,
            1 when parameters[0].ParameterType == typeof(ILambdaContext) => null,
            _ => parameters[0].ParameterType,
        };
        var passContext = parameters.Length == 2 || (parameters.Length == 1 && inputType is null);
        var contextFirst = parameters.Length == 1 && inputType is null;
        var resultType = Classify(method.ReturnType, out var awaitKind);

        var needsSerializer = (inputType is not null && inputType != typeof(Stream)) || (resultType is not null && !typeof(Stream).IsAssignableFrom(resultType));
        var serializer = needsSerializer ? CreateSerializer(method, assembly) : null;

        // The instance is made during Init, once, so its constructor's work counts as Init (as on Lambda).
        var target = method.IsStatic ? null : CreateInstance(type);

        var deserialize = inputType is not null && inputType != typeof(Stream) ? DeserializeMethod.MakeGenericMethod(inputType) : null;
        var serialize = resultType is not null && !typeof(Stream).IsAssignableFrom(resultType) ? SerializeMethod.MakeGenericMethod(resultType) : null;
        var resultProperty = awaitKind is AwaitKind.TaskOfT ? method.ReturnType.GetProperty("Result") : null;
        var asTask = awaitKind is AwaitKind.ValueTask or AwaitKind.ValueTaskOfT ? method.ReturnType.GetMethod("AsTask", Type.EmptyTypes) : null;
        var resultOfTask = asTask is not null && awaitKind is AwaitKind.ValueTaskOfT ? asTask.ReturnType.GetProperty("Result") : resultProperty;
        var argumentCount = parameters.Length;

        return async (input, context, output) =>
        {
            var arguments = new object?[argumentCount];
            if (contextFirst)
            {
                arguments[0] = context;
            }
            else if (argumentCount > 0)
            {
                arguments[0] = deserialize is null ? input : deserialize.Invoke(serializer, Invoke, null, [input], null);
                if (passContext)
                {
                    arguments[1] = context;
                }
            }

            var returned = method.Invoke(target, Invoke, null, arguments, null);
            object? result = returned;
            switch (awaitKind)
            {
                case AwaitKind.None:
                    break;
                case AwaitKind.Task:
                case AwaitKind.TaskOfT:
                    var task = (Task?)returned ?? throw new InvalidOperationException($"The handler {method.Name} returned a null Task.");
                    await task;
                    result = resultOfTask?.GetValue(task);
                    break;
                case AwaitKind.ValueTask:
                case AwaitKind.ValueTaskOfT:
                    var converted = (Task)asTask!.Invoke(returned, Invoke, null, null, null)!;
                    await converted;
                    result = resultOfTask?.GetValue(converted);
                    break;
            }

            if (resultType is null)
            {
                return;
            }
            if (serialize is null)
            {
                if (result is Stream stream)
                {
                    await using (stream)
                    {
                        await stream.CopyToAsync(output);
                    }
                }
                return;
            }
            serialize.Invoke(serializer, Invoke, null, [result, output], null);
        };
    }

    internal static (string Assembly, string Type, string Method) Parse(string handler)
    {
        if (string.IsNullOrWhiteSpace(handler))
        {
            throw new LambdaValidationException("Empty lambda function handler. " + Format);
        }
        var parts = handler.Split("::");
        if (parts.Length != 3)
        {
            throw new LambdaValidationException($"Invalid lambda function handler: '{handler}'. {Format}");
        }
        string[] what = ["assembly", "type", "method"];
        for (var i = 0; i < 3; i++)
        {
            parts[i] = parts[i].Trim();
            if (parts[i].Length == 0)
            {
                throw new LambdaValidationException($"Invalid lambda function handler: '{handler}', the {what[i]} is missing. {Format}");
            }
        }
        var assembly = parts[0].EndsWith(".dll", StringComparison.OrdinalIgnoreCase) ? parts[0][..^4] : parts[0];
        return (assembly, parts[1], parts[2]);
    }

    private static MethodInfo FindMethod(Type type, string name, string assemblyName)
    {
        const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.FlattenHierarchy;
        var candidates = new List<MethodInfo>(1);
        foreach (var candidate in type.GetMethods(All))
        {
            if (candidate.Name == name)
            {
                candidates.Add(candidate);
            }
        }
        if (candidates.Count == 0)
        {
            throw new LambdaValidationException($"Unable to find method '{name}' in type '{type.FullName}' from assembly '{assemblyName}': Found no methods matching method name '{name}'.");
        }
        if (candidates.Count > 1)
        {
            throw new LambdaValidationException($"The method '{name}' in type '{type.FullName}' appears to have a number of overloads. To call this method please specify a complete method signature. Possible candidates are:\n{string.Join("\n", candidates)}.");
        }
        return candidates[0];
    }

    private static void Validate(Type type, MethodInfo method)
    {
        if (type.IsGenericTypeDefinition)
        {
            throw new LambdaValidationException($"The type '{type.FullName}' cannot be used as a Lambda Handler type because it is generic. Handler methods cannot be located in generic types. Please specify a handler method in a non-generic type.");
        }
        if (!method.IsStatic && type.IsAbstract)
        {
            throw new LambdaValidationException($"The instance method '{method}' cannot be used as a Lambda Handler because its type '{type.FullName}' is abstract. Please either use a static handler or specify a type that is not abstract.");
        }
        if (method.IsAbstract)
        {
            throw new LambdaValidationException($"The method '{method}' cannot be used as a Lambda Handler because it is an abstract method. Handler methods cannot be abstract. Please specify a non-abstract handler method.");
        }
        if (method.IsGenericMethodDefinition)
        {
            throw new LambdaValidationException($"The method '{method}' cannot be used as a Lambda Handler because it is a generic method. Handler methods cannot be generic. Please specify a non-generic handler method.");
        }
        if (method.ReturnType == typeof(void) && method.IsDefined(typeof(AsyncStateMachineAttribute), inherit: false))
        {
            throw new LambdaValidationException($"The method '{method}' cannot be used as a Lambda Handler because it is an 'async void' method. Handler methods cannot be 'async void'. Please specify a method that is not 'async void'.");
        }
        var parameters = method.GetParameters();
        foreach (var parameter in parameters)
        {
            if (parameter.IsDefined(typeof(ParamArrayAttribute), inherit: false))
            {
                throw new LambdaValidationException($"The method '{method}' cannot be used as a Lambda Handler because it is a 'params' method. Please specify a method that does not use 'params'.");
            }
            if (parameter.ParameterType.IsByRef)
            {
                throw new LambdaValidationException($"Method '{method}' of type '{type.FullName}' is not supported: ref, out and in parameters cannot carry an event.");
            }
        }
        if (parameters.Length > 2)
        {
            throw new LambdaValidationException($"Method '{method}' of type '{type.FullName}' is not supported: the method has more than 2 parameters.");
        }
        if (parameters.Length == 2 && parameters[1].ParameterType != typeof(ILambdaContext))
        {
            throw new LambdaValidationException($"Method '{method}' of type '{type.FullName}' is not supported: the method has 2 parameters, but the second parameter is not of type '{typeof(ILambdaContext).FullName}'.");
        }
    }

    private enum AwaitKind
    {
        None,
        Task,
        TaskOfT,
        ValueTask,
        ValueTaskOfT,
    }

    /// <summary>
    /// The type whose value becomes the response (null: none), and how to wait for it. (An out parameter, not a
    /// tuple: a ValueTuple over a local enum is not precompiled and would cost a JIT at every cold start.)
    /// </summary>
    private static Type? Classify(Type returnType, out AwaitKind awaitKind)
    {
        awaitKind = AwaitKind.None;
        if (returnType == typeof(void))
        {
            return null;
        }
        if (returnType == typeof(Task))
        {
            awaitKind = AwaitKind.Task;
            return null;
        }
        if (returnType == typeof(ValueTask))
        {
            awaitKind = AwaitKind.ValueTask;
            return null;
        }
        if (returnType.IsGenericType)
        {
            var definition = returnType.GetGenericTypeDefinition();
            if (definition == typeof(Task<>))
            {
                awaitKind = AwaitKind.TaskOfT;
                return returnType.GetGenericArguments()[0];
            }
            if (definition == typeof(ValueTask<>))
            {
                awaitKind = AwaitKind.ValueTaskOfT;
                return returnType.GetGenericArguments()[0];
            }
        }
        return returnType;
    }

    private static ILambdaSerializer CreateSerializer(MethodInfo method, Assembly assembly)
    {
        var attribute = method.GetCustomAttribute<LambdaSerializerAttribute>() ?? assembly.GetCustomAttribute<LambdaSerializerAttribute>();
        if (attribute is null)
        {
            return new DefaultLambdaJsonSerializer();
        }
        var serializerType = attribute.SerializerType
            ?? throw new LambdaValidationException($"The 'SerializerType' property on attribute class '{typeof(LambdaSerializerAttribute).FullName}' is not set.");
        if (!typeof(ILambdaSerializer).IsAssignableFrom(serializerType))
        {
            throw new LambdaValidationException($"The '{serializerType.FullName}' class is invalid: it does not implement the '{typeof(ILambdaSerializer).FullName}' interface.");
        }
        if (serializerType.GetConstructor(Type.EmptyTypes) is null)
        {
            throw new LambdaValidationException($"The indicated serializer '{serializerType.FullName}' does not define a public zero-parameter constructor.");
        }
        return (ILambdaSerializer)Activator.CreateInstance(serializerType)!;
    }

    private static object CreateInstance(Type type)
    {
        if (!type.IsValueType && type.GetConstructor(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance, Type.EmptyTypes) is null)
        {
            throw new LambdaValidationException($"The type '{type.FullName}' has no parameterless constructor: an instance handler's type is created with one, once per execution environment.");
        }
        // Exceptions from the constructor reach the init error as thrown.
        return Activator.CreateInstance(type, nonPublic: true)!;
    }
}
