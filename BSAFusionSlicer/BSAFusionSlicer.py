"""BSAFusion in 3D Slicer: register and fuse an MRI with a CT/PET/SPECT volume in one step.

The panel runs the ``BSAFusionCLI`` module in the background when it is loaded (Slicer keeps the
application responsive and shows its progress); otherwise it runs the same pipeline in this
process, keeping the application responsive between slices. torch is imported only when needed.
"""

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Union

import slicer
import vtk
from BSAFusionSlicerLib import core_path
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

core_path.add_core_to_path()

from BSAFusionSlicerLib import cli_route, dependencies  # noqa: E402
from BSAFusionSlicerLib.logic import (  # noqa: E402
    RECORD_ATTRIBUTE,
    OutputNodes,
    fused_volume_class,
    process,
    warped_volume_class,
)
from BSAFusionSlicerLib.modality import guess_node_modality  # noqa: E402
from BSAFusionSlicerLib.settings import (  # noqa: E402
    DEVICES,
    MODEL_SOURCES,
    PanelSettings,
)

from BSAFusionCore.errors import Cancelled  # noqa: E402
from BSAFusionCore.model_info import registration_summary  # noqa: E402
from BSAFusionCore.options import (  # noqa: E402
    COLORMAPS,
    CT_WINDOW_AUTO,
    CT_WINDOW_CHOICES,
    DEFAULT_PREALIGN,
    MODALITIES,
    PREALIGN_MODES,
    REFINE_MODALITIES,
    SLICE_AXIS_CHOICES,
)

logger = logging.getLogger(__name__)


class BSAFusionSlicer(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        super().__init__(parent)
        self.parent.title = "BSAFusion"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["BSAFusion for 3D Slicer contributors"]
        self.parent.helpText = (
            "Registers a CT, PET or SPECT volume onto an MRI and fuses them in one step with the "
            "BSAFusion network (AAAI 2025), slice by slice. Outputs: the fused volume, the warped "
            "moving volume and the displacement as a grid transform."
        )
        self.parent.acknowledgementText = (
            "BSAFusion: Li H. et al., 'BSAFusion: A Bidirectional Stepwise Feature Alignment Network for "
            "Unaligned Medical Image Fusion', AAAI 2025."
        )


AnyVolume = Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLVectorVolumeNode, None]  # noqa: UP007
"""Scalar or RGB volume; the parameterNodeWrapper recognises ``typing.Union``, not ``X | Y``."""


@parameterNodeWrapper
class BSAFusionSlicerParameterNode:
    """Every setting of the panel; saved with the scene."""

    fixedVolume: slicer.vtkMRMLScalarVolumeNode
    movingVolume: AnyVolume
    modality: Annotated[str, Choice(list(MODALITIES))] = "CT"
    modelSource: Annotated[str, Choice(list(MODEL_SOURCES))] = "bundled"
    modelFile: Path
    prealign: Annotated[str, Choice(list(PREALIGN_MODES))] = DEFAULT_PREALIGN
    fuseOnly: bool = False
    refine: bool = False
    sliceAxis: Annotated[str, Choice(list(SLICE_AXIS_CHOICES))] = SLICE_AXIS_CHOICES[0]
    ctWindow: Annotated[str, Choice(list(CT_WINDOW_CHOICES))] = CT_WINDOW_AUTO
    colorFusion: bool = False
    colormap: Annotated[str, Choice(list(COLORMAPS))] = COLORMAPS[0]
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    batchSize: Annotated[int, WithinRange(1, 64)] = 8
    fusedVolume: AnyVolume
    warpedVolume: AnyVolume
    displacementTransform: slicer.vtkMRMLGridTransformNode


def panel_settings(parameters: BSAFusionSlicerParameterNode) -> PanelSettings:
    """The parameter node's settings in the Qt-free form."""
    model_file = str(parameters.modelFile) if parameters.modelFile else ""
    return PanelSettings(
        modality=parameters.modality,
        model_source=parameters.modelSource,
        model_file="" if model_file == "." else model_file,
        prealign=parameters.prealign,
        fuse_only=parameters.fuseOnly,
        refine=parameters.refine,
        slice_axis=parameters.sliceAxis,
        ct_window=parameters.ctWindow,
        color_fusion=parameters.colorFusion,
        colormap=parameters.colormap,
        device=parameters.device,
        batch_size=parameters.batchSize,
    )


class BSAFusionSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads the parameter node, starts a run, shows progress and the result."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancel: threading.Event | None = None
        self._cliNode = None
        self._createdNodes: list = []
        self._started = 0.0
        self._outputs: OutputNodes | None = None
        self._recordFile: Path | None = None

    def setup(self) -> None:
        super().setup()
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BSAFusionSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BSAFusionSlicerLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.movingVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onMovingVolumeChanged)
        self.ui.modalityComboBox.connect("currentIndexChanged(int)", self.updateEnabledOptions)
        self.ui.modelSourceComboBox.connect("currentIndexChanged(int)", self.updateEnabledOptions)
        self.ui.fuseOnlyCheckBox.connect("toggled(bool)", self.updateEnabledOptions)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.updateModelInfo)
        self.ui.advancedCollapsibleGroupBox.connect("toggled(bool)", self.onAdvancedToggled)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: BSAFusionSlicerParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        running = self._cancel is not None or self._cliNode is not None
        ready = bool(self._parameterNode and self._parameterNode.fixedVolume and self._parameterNode.movingVolume)
        self.ui.applyButton.enabled = running or ready
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.toolTip = "Stop the run" if running else "Register and fuse the two volumes"
        self.updateEnabledOptions()

    def updateEnabledOptions(self, *_) -> None:
        modality = self.ui.modalityComboBox.currentText
        self.ui.ctWindowComboBox.enabled = modality == "CT"
        refine_applies = modality in REFINE_MODALITIES and not self.ui.fuseOnlyCheckBox.checked
        self.ui.refineCheckBox.enabled = refine_applies
        if not refine_applies:  # fuse-only and refine exclude each other
            self.ui.refineCheckBox.checked = False
        self.ui.colorFusionCheckBox.enabled = modality in ("PET", "SPECT")
        self.ui.colormapComboBox.enabled = modality in ("PET", "SPECT")
        self.ui.modelPathLineEdit.enabled = self.ui.modelSourceComboBox.currentText == "file"
        self.updateModelInfo()

    def updateModelInfo(self, *_) -> None:
        """Say next to the model choice whether its weights register (read from the file's header)."""
        if self.ui.modelSourceComboBox.currentText == "file":
            source = self.ui.modelPathLineEdit.currentPath
            if not source:
                self.ui.modelInfoLabel.text = "choose a model file"
                return
        else:
            source = self.ui.modalityComboBox.currentText
        registers, summary = registration_summary(source)
        self.ui.modelInfoLabel.text = "yes" if registers else ("NO: fusion only" if registers is False else "unknown")
        self.ui.modelInfoLabel.toolTip = summary
        self.ui.modelInfoLabel.styleSheet = "color: #c05000; font-weight: bold" if registers is False else ""

    def onMovingVolumeChanged(self, node) -> None:
        if node is not None and self._parameterNode:
            guessed = guess_node_modality(node)
            if guessed:
                self._parameterNode.modality = guessed

    def onAdvancedToggled(self, expanded: bool) -> None:
        """Show the GPU name when the Advanced section opens (the first look imports torch)."""
        if expanded:
            self.ui.gpuNameLabel.text = detectedGpuName()

    def onApplyButton(self) -> None:
        if self._cancel is not None or self._cliNode is not None:
            self.cancelRun()
            return
        with slicer.util.tryWithErrorDisplay("BSAFusion failed.", waitCursor=True):
            if not ensureDependencies():
                return
            if hasattr(slicer.modules, "bsafusioncli"):
                self.startCliRun()
            else:
                self.runInProcess()

    def cancelRun(self) -> None:
        self.setStatus(None, "cancelling...")
        if self._cancel is not None:
            self._cancel.set()
        if self._cliNode is not None:
            self._cliNode.Cancel()

    def setStatus(self, fraction: float | None, stage: str) -> None:
        """Progress bar and status line: the stage and, once under way, the time left."""
        text = stage
        if fraction is not None:
            self.ui.progressBar.visible = True
            self.ui.progressBar.value = round(100 * fraction)
            elapsed = time.monotonic() - self._started
            if 0.05 < fraction < 1.0 and elapsed > 2.0:
                text += f" - about {format_seconds(elapsed * (1.0 - fraction) / fraction)} left"
        self.ui.statusLabel.text = text

    def _reportInProcess(self, fraction: float, stage: str) -> None:
        """Progress of an in-process run; also lets Qt handle clicks (Cancel) and repaints."""
        self.setStatus(fraction, stage)
        slicer.app.processEvents()

    def runInProcess(self) -> None:
        """The pipeline in this process; Qt events are processed at each progress report."""
        parameters = self._parameterNode
        self._cancel = threading.Event()
        self._started = time.monotonic()
        self._checkCanApply()
        try:
            nodes = self.logic.process(
                parameters.fixedVolume,
                parameters.movingVolume,
                parameters.modality,
                parameters.fusedVolume,
                parameters.warpedVolume,
                parameters.displacementTransform,
                progressCallback=self._reportInProcess,
                cancel=self._cancel,
                **panel_settings(parameters).process_options(),
            )
        except Cancelled:
            self.setStatus(0.0, "cancelled; the scene is unchanged")
            return
        except Exception:
            self.setStatus(0.0, "failed; the scene is unchanged")
            raise
        finally:
            self._cancel = None
            self._checkCanApply()
        self.showResult(nodes)

    def startCliRun(self) -> None:
        """``BSAFusionCLI`` in the background; missing output nodes are made now and removed on failure."""
        parameters = self._parameterNode
        settings = panel_settings(parameters)
        colour = "color_fusion" in settings.process_options()  # refuses bad settings before nodes are made
        moving = parameters.movingVolume
        self._createdNodes = []
        self._outputs = OutputNodes(
            parameters.fusedVolume or self._newNode(fused_volume_class(moving, colour), "fused"),
            parameters.warpedVolume or self._newNode(warped_volume_class(moving), "warped"),
            parameters.displacementTransform or self._newNode("vtkMRMLGridTransformNode", "displacement"),
        )
        self._recordFile = Path(slicer.app.temporaryPath) / f"bsafusion-record-{time.time_ns()}.json"
        arguments = cli_route.cli_parameters(
            parameters.fixedVolume, moving, self._outputs, settings, str(self._recordFile)
        )
        self._started = time.monotonic()
        self._cliNode = slicer.cli.run(
            slicer.modules.bsafusioncli, None, arguments, wait_for_completion=False, update_display=False
        )
        self.addObserver(self._cliNode, slicer.vtkMRMLCommandLineModuleNode.StatusModifiedEvent, self.onCliModified)
        self._checkCanApply()
        self.setStatus(0.0, "starting")

    def _newNode(self, className: str, suffix: str):
        name = slicer.mrmlScene.GenerateUniqueName(f"{self._parameterNode.movingVolume.GetName()} {suffix}")
        node = slicer.mrmlScene.AddNewNodeByClass(className, name)
        self._createdNodes.append(node)
        return node

    def onCliModified(self, cliNode, event) -> None:
        status = cliNode.GetStatus()
        if cliNode.IsBusy():
            self.setStatus(cliNode.GetProgress() / 100.0, cliNode.GetStatusString().lower())
            return
        self.removeObserver(cliNode, slicer.vtkMRMLCommandLineModuleNode.StatusModifiedEvent, self.onCliModified)
        self._cliNode = None
        self._checkCanApply()
        if status == cliNode.Completed:
            self._createdNodes = []
            if self._recordFile.is_file():
                for node in self._outputs:
                    node.SetAttribute(RECORD_ATTRIBUTE, self._recordFile.read_text(encoding="utf-8"))
                self._recordFile.unlink()
            self.showResult(self._outputs)
        else:
            for node in self._createdNodes:
                slicer.mrmlScene.RemoveNode(node)
            self._createdNodes = []
            self.setStatus(0.0, "cancelled; the scene is unchanged" if status == cliNode.Cancelled else "failed")
            if status != cliNode.Cancelled:
                slicer.util.errorDisplay("BSAFusion failed.", detailedText=cliNode.GetErrorText())
        slicer.mrmlScene.RemoveNode(cliNode)

    def showResult(self, nodes: OutputNodes) -> None:
        """Select the outputs in the panel and show fused + warped (half opacity) in the slice views."""
        self._parameterNode.fusedVolume = nodes.fused
        self._parameterNode.warpedVolume = nodes.warped
        self._parameterNode.displacementTransform = nodes.transform
        slicer.util.setSliceViewerLayers(
            background=nodes.fused, foreground=nodes.warped, foregroundOpacity=0.5, fit=True
        )
        self.setStatus(1.0, f"done in {format_seconds(time.monotonic() - self._started)}")


def format_seconds(seconds: float) -> str:
    """``m:ss`` for the status line."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def detectedGpuName() -> str:
    """The CUDA GPU torch sees, or why there is none (imports torch: called on demand only)."""
    if "torch" in dependencies.missing_packages():
        return "unknown: PyTorch is not installed yet"
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (the CPU is used)"


def ensureDependencies() -> bool:
    """Offer to install what BSAFusion needs; False when the user declines."""
    missing = dependencies.missing_packages()
    if not missing:
        return True
    pytorchExtension = hasattr(slicer.modules, "pytorchutils")
    plan = dependencies.install_plan(missing, pytorchExtension)
    if not slicer.util.confirmOkCancelDisplay(
        "BSAFusion needs Python packages that are not installed:\n\n" + plan.describe() + "\n\nInstall them now?",
        "BSAFusion: install dependencies",
    ):
        return False
    with slicer.util.WaitCursor():
        if plan.torch_via_pytorch_extension:
            import PyTorchUtils

            installer = PyTorchUtils.PyTorchUtilsLogic()
            if installer.installTorch(askConfirmation=False, torchVersionRequirement=">=2.1") is None:
                raise RuntimeError("PyTorch could not be installed by the PyTorch extension")
        if plan.pip_requirements:
            constraints = Path(slicer.app.temporaryPath) / "bsafusion-constraints.txt"
            slicer.util.pip_install(dependencies.pip_arguments(plan.pip_requirements, constraints))
    still = dependencies.missing_packages()
    if still:
        raise RuntimeError(f"still missing after installation: {', '.join(still)}")
    return True


class BSAFusionSlicerLogic(ScriptedLoadableModuleLogic):
    """Scripting API; the work is done by the Qt-free ``BSAFusionSlicerLib.logic.process``."""

    def getParameterNode(self) -> BSAFusionSlicerParameterNode:
        return BSAFusionSlicerParameterNode(super().getParameterNode())

    def process(
        self,
        fixedVolumeNode,
        movingVolumeNode,
        modality: str = "CT",
        fusedVolumeNode=None,
        warpedVolumeNode=None,
        transformNode=None,
        progressCallback=None,
        **options,
    ) -> OutputNodes:
        """Register and fuse; creates missing output nodes and returns ``(fused, warped, transform)``.

        ``options``: ``model``, ``device``, ``prealign``, ``fuse_only``, ``refine``, ``axis``, ``ct_window``,
        ``color_fusion``, ``colormap``, ``percentiles``, ``batch_size``, ``cancel`` (see ``BSAFusionSlicerLib.logic``).
        """
        started = time.monotonic()
        nodes = process(
            fixedVolumeNode,
            movingVolumeNode,
            modality,
            fusedVolumeNode,
            warpedVolumeNode,
            transformNode,
            progressCallback,
            **options,
        )
        logger.info("BSAFusion finished in %.1f s", time.monotonic() - started)
        return nodes


class BSAFusionSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer on generated volumes (no downloads)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_process_on_generated_volumes()

    def test_process_on_generated_volumes(self) -> None:
        import numpy as np
        import torch

        from BSAFusionCore.network import BSAFusionNet
        from BSAFusionCore.weights import save_weights

        self.delayDisplay("Generating an MRI-like and a shifted CT-like volume, and a small random model")
        fixed = generatedVolume("MRI", shift=0.0, spacing=(1.0, 1.0, 2.0))
        moving = generatedVolume("phantom CT", shift=3.0, spacing=(1.2, 0.9, 2.0))
        self.assertEqual(guess_node_modality(moving), "CT")
        movingBefore = slicer.util.arrayFromVolume(moving).copy()
        torch.manual_seed(0)
        weights = Path(slicer.app.temporaryPath) / "BSAFusion_selftest_64px.safetensors"
        save_weights(weights, BSAFusionNet(), {"modality": "CT", "image_size": 64})

        stages = []
        nodes = BSAFusionSlicerLogic().process(
            fixed,
            moving,
            "CT",
            progressCallback=lambda fraction, stage: stages.append((fraction, stage)),
            model=str(weights),
            device="cpu",
        )
        fused = slicer.util.arrayFromVolume(nodes.fused)
        self.assertEqual(fused.shape, slicer.util.arrayFromVolume(fixed).shape)
        self.assertTrue(np.isfinite(fused).all() and fused.min() >= 0.0 and fused.max() <= 1.0)
        self.assertEqual(nodes.transform.GetTransformFromParent().GetClassName(), "vtkOrientedGridTransform")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(moving), movingBefore))
        self.assertEqual(stages[-1], (1.0, "writing outputs"))

        self.delayDisplay("Hardening the displacement on a copy of the moving volume")
        copy = slicer.modules.volumes.logic().CloneVolume(slicer.mrmlScene, moving, "hardened")
        copy.SetAndObserveTransformNodeID(nodes.transform.GetID())
        self.assertTrue(slicer.vtkSlicerTransformLogic.hardenTransform(copy))
        self.assertIsNone(copy.GetTransformNodeID())
        slicer.util.setSliceViewerLayers(background=nodes.fused, foreground=nodes.warped, foregroundOpacity=0.5)
        self.delayDisplay("Test passed")


def generatedVolume(name: str, shift: float, spacing: tuple[float, float, float]):
    """A 64 x 64 x 6 head-like ellipse phantom (CT-like when the name says CT) with an oblique grid."""
    import numpy as np

    _, j, i = np.mgrid[0:6, 0:64, 0:64].astype(np.float32)
    x, y = (i - 32 - shift) / 24.0, (j - 32) / 28.0
    inside = (x**2 + y**2) < 1.0
    ring = inside & ((x**2 + y**2) > 0.8)
    if "CT" in name:
        voxels = np.where(ring, 1000.0, np.where(inside, 40.0, -1000.0))
    else:
        voxels = np.where(ring, 50.0, np.where(inside, 400.0 + 100.0 * np.sin(3 * x) * np.cos(2 * y), 0.0))
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, voxels.astype(np.float32))
    node.SetSpacing(*spacing)
    node.SetOrigin(-32.0 * spacing[0], -32.0 * spacing[1], -3.0 * spacing[2])
    c, s = np.cos(0.2), np.sin(0.2)
    node.SetIJKToRASDirections(c, s, 0.0, -s, c, 0.0, 0.0, 0.0, 1.0)
    node.CreateDefaultDisplayNodes()
    return node
